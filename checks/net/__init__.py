"""The network seam: resolution, the address guard, TLS and HTTP, in one object."""
