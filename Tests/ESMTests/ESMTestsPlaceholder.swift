import XCTest
@testable import ESM
