#!/bin/sh
echo "Content-Type: text/plain"
echo ""
echo "shell says hello to ${QUERY_STRING}"
