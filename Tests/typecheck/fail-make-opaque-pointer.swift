// expect: error: generic struct 'GoSlice' requires that 'OpaquePointer' conform to 'GoZeroValue'
import SpanAlloc
_ = GoSlice<OpaquePointer>(length: 1)
