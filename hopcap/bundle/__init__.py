"""The evidence bundle: manifest, verdict, report, merged pcapng, facts. Pure file I/O."""
