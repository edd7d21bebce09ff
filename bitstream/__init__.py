"""m3cvcav.bitstream"""
