// ProteinData module placeholder
