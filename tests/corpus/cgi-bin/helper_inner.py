VALUE = "inner-1"
