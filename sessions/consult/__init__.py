"""A participant in a consultation room, as a user takes part in it.

``net`` knows messages; this package knows what they mean to the people in the room: local intents
become state ops and received ops (and the snapshot) become scene changes; local head and hands
become pose records and received pose records become avatars; roles say who may do what; a presenter
can be followed ("follow me"); and scripted participants stand in for people in demos and benchmarks
(``scripted``: made-up poses and operations for ``medverse consult join --backend none``).
"""
