// Pipeline module placeholder
