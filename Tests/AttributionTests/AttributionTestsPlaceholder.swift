import XCTest
@testable import Attribution
