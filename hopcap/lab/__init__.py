"""The namespace lab: a real four-hop site (client -> fw -> lb -> srv) on this machine."""
