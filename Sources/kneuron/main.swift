import ArgumentParser
import Pipeline
