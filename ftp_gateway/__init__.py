"""ftp_gateway: maintain a cgirt site with an FTP client only."""
