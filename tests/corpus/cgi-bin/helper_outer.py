import helper_inner

def describe():
    return "outer-1 " + helper_inner.VALUE
