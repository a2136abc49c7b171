"""Process plumbing shared by every service: configuration, logging, servers, connections."""
