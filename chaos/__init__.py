"""``make chaos``: overlapping real faults under load, on servers of its own, then the ledger check.

A throwaway PostgreSQL cluster and RabbitMQ node are created for the run (``chaos.servers``); the system runs on
them as deployed (``chaos.system``: worker pods, beats, the API); a seeded plan of faults (``chaos.plan``) is
injected while hundreds of schedules fire (``chaos.faults``, ``chaos.load``); then every slot of every schedule
is accounted for (``chaos.ledger``). Everything created is removed at the end, also on Ctrl-C.
"""
