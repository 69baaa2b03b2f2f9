"""Health monitoring: service_types, checks, admin_state."""
