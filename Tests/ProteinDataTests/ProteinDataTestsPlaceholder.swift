import XCTest
@testable import ProteinData
