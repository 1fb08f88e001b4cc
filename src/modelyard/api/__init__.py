"""The HTTP edge: parse, authenticate, call one service, render. No business rules here."""
