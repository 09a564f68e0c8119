"""Selection: which repositories and tags a policy takes (filters, `Policy`, `glob_match`)."""
