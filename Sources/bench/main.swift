import SpanAlloc
print("bench: not yet implemented")
