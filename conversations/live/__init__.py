"""The live answer: the socket protocol and its consumer, the running answer (generation),
how its request is assembled, and the fan-out of its frames to every tab, in this process
and others."""
