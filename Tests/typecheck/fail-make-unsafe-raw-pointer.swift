// expect: error: generic struct 'GoSlice' requires that 'UnsafeRawPointer' conform to 'GoZeroValue'
import SpanAlloc
_ = GoSlice<UnsafeRawPointer>(length: 2, capacity: 4)
