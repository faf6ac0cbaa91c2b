"""`cgirt host`: one master for every site of a host, with workers on demand."""
