"""m3cvcav.engines"""
