"""Razorpay as razorpay.md describes it: wire codecs, request rules, state and routes."""
