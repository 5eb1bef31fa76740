"""Key tables: the authors' parameter names onto ours, one module per
network part, each holding every source layout of that part."""
