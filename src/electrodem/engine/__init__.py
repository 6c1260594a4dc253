"""electrodem.engine"""
