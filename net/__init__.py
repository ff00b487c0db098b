"""Consultation networking on aiortc: signaling, rooms and tokens, peers, wire protocol, clocks, latency.

Imports only aiortc, aiohttp, numpy and the standard library: it knows messages, not meshes or GL.
Importing it tunes aiortc's data-channel path for the whole process (``net.datapath``): every peer,
test and benchmark that uses ``net`` runs on the same SCTP behaviour.
"""

from net import datapath

datapath.install()
