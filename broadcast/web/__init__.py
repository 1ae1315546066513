"""HTTP layer: thin views over the services, one error shape, authentication and CSRF."""
