"""The start of every reconstruction: views -> softened masks, the carved hull, its box, the initial SDF with
the priors for what no camera sees."""
