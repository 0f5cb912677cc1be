"""Native tool building: definitions, builders, a persistent registry and a real sandbox."""
