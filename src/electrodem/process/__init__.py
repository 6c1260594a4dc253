"""electrodem.process"""
