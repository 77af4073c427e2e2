"""SSH keys the panel makes and keeps for reaching nodes."""
