import ArgumentParser
import Foundation
import Pipeline

/// `kneuron plant --fasta F... --out DIR`: a planted-knowledge benchmark built from real
/// sequences (`PlantedDataset`), whose class is a motif written into each sequence.
struct PlantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plant",
        abstract: "Build a planted-knowledge benchmark: real sequences, each class defined by its own motif written into them, plus decoy motifs.",
        discussion: """
            Writes DIR/planted.fasta, DIR/planted.ec.tsv (class k labelled k.-.-.-), DIR/planted.motifs.tsv (every planted motif: \
            sequence, 1-based start and end, residues, PROSITE pattern, class label or decoy) and DIR/planted.json (recipe, sources' \
            SHA-256, counts). Seeded: the same inputs and options give the same files byte for byte. pipelines/planted.yaml runs the \
            pipeline on the default output (data/planted).
            """)
    @Option(parsing: .upToNextOption, help: "FASTA file(s) of real sequences to plant into.") var fasta: [String]
    @Option(help: "Output directory.") var out: String
    @Option(help: "Classes (2 ... \(PlantedDataset.classMotifs.count)), each with its own motif.") var classes = 5
    @Option(help: "Sequences per class.") var perClass = 600
    @Option(help: "Decoy motifs per sequence (0 ... 4), not tied to a class.") var decoys = 2
    @Option(help: "Residues per planted sequence (a random window of each source sequence; keep the model's max_length >= length + 2).") var length = 100
    @Option(help: "Seed of every random choice.") var seed: UInt64 = 1

    func run() throws {
        var recipe = PlantedDataset.Recipe()
        recipe.classes = classes; recipe.perClass = perClass; recipe.decoys = decoys
        recipe.length = length; recipe.seed = seed
        let w = try PlantedDataset.write(fasta: fasta, recipe: recipe, to: out)
        print("planted \(classes) class motifs and \(decoys) decoys each into \(w.dataset.sequences.count) sequences "
            + "(of \(w.dataset.candidates) usable; \(w.dataset.naturalMatches) left out because they carried a motif by nature)")
        for (i, m) in PlantedDataset.classMotifs.prefix(classes).enumerated() { print("  class \(i + 1).-.-.-: \(m)") }
        print("  decoys: " + PlantedDataset.decoyMotifs.joined(separator: ", "))
        for f in w.files { print("wrote \(f)") }
    }
}
