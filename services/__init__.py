"""League services: the referee and coordinator processes and the gRPC plumbing they share."""
