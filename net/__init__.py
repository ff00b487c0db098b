"""Consultation networking on aiortc: signaling, rooms and tokens, peers, wire protocol, clocks, latency.

Imports only aiortc, aiohttp, numpy and the standard library: it knows messages, not meshes or GL.
"""
