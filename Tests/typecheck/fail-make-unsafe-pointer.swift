// expect: error: generic struct 'GoSlice' requires that 'UnsafePointer<Int>' conform to 'GoZeroValue'
import SpanAlloc
_ = GoSlice<UnsafePointer<Int>>(length: 3)
