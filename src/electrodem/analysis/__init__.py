"""electrodem.analysis"""
