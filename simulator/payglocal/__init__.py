"""PayGlocal as payglocal.md describes it: wire codecs, keys, request rules, state and routes."""
