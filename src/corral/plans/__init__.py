"""Plans: what customers can order (resources, monthly traffic, price) and where it is offered."""
