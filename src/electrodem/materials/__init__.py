"""electrodem.materials"""
