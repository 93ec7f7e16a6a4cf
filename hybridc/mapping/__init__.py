"""Will it fit: the resource model of each chip generation and system (data with sources),
the spiking layers counted from the netx files, and the mapping pass onto cores and chips."""
