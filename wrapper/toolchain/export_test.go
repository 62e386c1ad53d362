package toolchain

// ParseLdd exposes parseLdd to the tests.
var ParseLdd = parseLdd
