// Training module placeholder
