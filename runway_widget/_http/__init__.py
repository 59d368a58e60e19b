"""The HTTP plumbing under the client: transport, deadlines, replies, secrets, addresses.

Not API: everything here may change; the client and the errors are the public face.
"""
