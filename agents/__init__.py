"""The agent process: serves its own parameters over gRPC and runs its own learning rule."""
