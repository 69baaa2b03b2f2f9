"""The control socket (gdnsd's protocol): server side and gdnsdctl's client side."""
