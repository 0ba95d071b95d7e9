"""Who is calling: bearer tokens on the services' HTTP routes, and tokens for their own calls."""
