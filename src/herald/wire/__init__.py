"""The wire: frames, the handshake, client requests and replies, Raft between peers.

:mod:`herald.wire.protocol` defines every message; :mod:`herald.wire.frames`
frames them and holds the codecs. Both are shared by the server and the clients.
"""
