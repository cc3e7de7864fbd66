"""`herald torture`: Jepsen-style fault injection against real `herald serve` processes.

:mod:`herald.torture.proxy` puts a fault-injecting TCP proxy on every link;
:mod:`herald.storage.volatile` gives nodes a file system that loses unsynced
writes when the process is killed, as a power cut would.
"""
