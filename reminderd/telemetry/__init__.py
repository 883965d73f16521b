"""What the daemon tells the outside: Prometheus metrics and health, structured logs, systemd notify."""
