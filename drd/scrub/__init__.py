"""Check that every tag's closure is whole at a registry: manifests, child manifests, blobs."""
