"""SSH public keys a person keeps on their account, to put on new servers."""
