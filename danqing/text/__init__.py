"""Caption text checks: language, cleaning, quality, density, safety (one concern a module)."""
