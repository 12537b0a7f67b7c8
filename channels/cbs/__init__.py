"""Cell broadcast (3GPP TS 23.041): page encoding and the client of a cell broadcast centre."""
