// expect: error: generic struct 'GoSlice' requires that 'Unmanaged<AnyObject>' conform to 'GoZeroValue'
import SpanAlloc
_ = GoSlice<Unmanaged<AnyObject>>(length: 1)
